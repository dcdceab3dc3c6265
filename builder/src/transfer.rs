//! Moves images between a registry and the store: [`pull_image`] fetches
//! a manifest with its config and layers into the store and names it (or
//! keeps it as a digest reference when pulled by digest), and
//! [`push_image`] sends a stored image to a registry. `forge pull`,
//! `forge push` and `forge build` (for `FROM` bases and `--push`) share
//! these functions.
//!
//! Blobs move several at a time, at most [`PullOptions::jobs`] or
//! [`PushOptions::jobs`] at once, and every blob is checked against its
//! digest: by the store's writer on pull and by the client while it
//! reads the store on push. The store records which registry repositories
//! hold each blob ([`forge_cache::store::sources`]), so a push to another
//! repository of the same registry can mount a blob instead of uploading
//! it.

use std::io::{self, Read, Write};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use forge_cache::store::sources::BlobSource;
use forge_cache::store::{BlobWriter, SOURCE_INDEX_ANNOTATION, Store, StoreError};
use forge_registry::client::{OCI_MANIFEST, ResolvedManifest};
use forge_registry::{BlobPush, BlobSink, Client, ClientError, Platform, Reference};
use oci_spec::image::{Descriptor, Digest, ImageIndex, ImageManifest, MediaType};

use crate::progress::{Progress, ProgressEvent, StepId, Stream};

/// The number of blobs moved at once unless the caller sets another.
pub const DEFAULT_JOBS: usize = 4;

/// How many bytes pass between two [`TransferEvent::BlobProgress`] events
/// of one blob.
const PROGRESS_STEP_BYTES: u64 = 256 * 1024;

/// A failed pull or push.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransferError {
    /// The registry failed or rejected a request.
    #[error("failed to {action} `{reference}`")]
    Registry {
        /// The operation, such as "fetch the manifest of".
        action: String,
        /// The reference involved.
        reference: String,
        /// The client error.
        #[source]
        source: Box<ClientError>,
    },

    /// The store failed.
    #[error("failed to {action}")]
    Store {
        /// The operation, such as "store blob sha256:...".
        action: String,
        /// The store error.
        #[source]
        source: Box<StoreError>,
    },

    /// A manifest or index cannot be used.
    #[error("the {what} {digest} of `{reference}` is invalid: {reason}")]
    InvalidManifest {
        /// "manifest", "index" or "image config".
        what: &'static str,
        /// The manifest's digest.
        digest: String,
        /// The reference it came from or goes to.
        reference: String,
        /// The problem.
        reason: String,
    },
}

impl TransferError {
    fn registry(action: &str, reference: &Reference) -> impl FnOnce(ClientError) -> TransferError {
        let action = action.to_string();
        let reference = reference.to_string();
        move |source| TransferError::Registry {
            action,
            reference,
            source: Box::new(source),
        }
    }

    fn store(action: impl Into<String>) -> impl FnOnce(StoreError) -> TransferError {
        let action = action.into();
        move |source| TransferError::Store {
            action,
            source: Box::new(source),
        }
    }
}

/// The outcome of one blob transfer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlobOutcome {
    /// Pull: the store already had the blob.
    AlreadyPresent,
    /// Pull: the blob was downloaded and stored.
    Downloaded,
    /// Push: the repository already had the blob, so no data was sent.
    AlreadyExists,
    /// Push: the registry mounted the blob from another repository.
    Mounted {
        /// The repository the blob was mounted from.
        from: String,
    },
    /// Push: the blob was uploaded.
    Uploaded,
}

/// One thing that happened during a pull or push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransferEvent {
    /// The manifest was resolved, and blob events follow.
    Resolved {
        /// The reference being pulled or pushed.
        reference: String,
        /// The number of blobs (config and layers) of the image.
        blobs: usize,
    },
    /// A blob transfer started.
    BlobStarted {
        /// The blob.
        digest: Digest,
        /// Its size in bytes.
        size: u64,
    },
    /// Bytes of a blob moved.
    BlobProgress {
        /// The blob.
        digest: Digest,
        /// Bytes moved so far.
        done: u64,
        /// The blob's size in bytes.
        size: u64,
    },
    /// A blob is done.
    BlobFinished {
        /// The blob.
        digest: Digest,
        /// Its size in bytes.
        size: u64,
        /// What happened.
        outcome: BlobOutcome,
    },
}

/// Receives the events of a pull or push, possibly from several threads.
pub trait TransferProgress: Send + Sync {
    /// Handles one event.
    fn event(&self, event: TransferEvent);
}

impl<F: Fn(TransferEvent) + Send + Sync> TransferProgress for F {
    fn event(&self, event: TransferEvent) {
        self(event);
    }
}

/// Options of [`pull_image`].
#[derive(Debug, Clone)]
pub struct PullOptions {
    /// The platform picked from an index.
    pub platform: Platform,
    /// The number of blobs downloaded at once (at least 1).
    pub jobs: usize,
}

impl Default for PullOptions {
    fn default() -> Self {
        PullOptions {
            platform: Platform::default(),
            jobs: DEFAULT_JOBS,
        }
    }
}

/// The result of [`pull_image`].
#[derive(Debug, Clone)]
pub struct Pulled {
    /// The digest of what the reference names in the registry: the index
    /// when there is one, otherwise the image manifest.
    pub digest: Digest,
    /// The image manifest for the platform, as stored and named.
    pub manifest: Descriptor,
    /// The store name set, in the familiar form (`busybox:latest`), or the
    /// digest reference kept for a pull by digest (`busybox@sha256:...`).
    pub name: String,
    /// Whether the name pointed at another manifest (or nothing) before,
    /// or, for a pull by digest, whether the repository had no digest
    /// reference of the manifest.
    pub updated: bool,
}

/// Options of [`push_image`].
#[derive(Debug, Clone)]
pub struct PushOptions {
    /// The number of blobs uploaded at once (at least 1).
    pub jobs: usize,
}

impl Default for PushOptions {
    fn default() -> Self {
        PushOptions { jobs: DEFAULT_JOBS }
    }
}

/// The result of [`push_image`].
#[derive(Debug, Clone)]
pub struct Pushed {
    /// The digest of the pushed manifest or index.
    pub digest: Digest,
    /// Its size in bytes.
    pub size: u64,
}

/// Pulls the image `reference` names into the store and names it with
/// the familiar form of `reference`.
///
/// A reference with a digest (`NAME@DIGEST`, or `NAME:TAG@DIGEST`, whose
/// tag is ignored as docker ignores it) sets no name: the image is kept as
/// a digest reference of its repository ([`Store::add_digest_reference`]),
/// which `NAME@DIGEST` finds later and `prune` keeps.
///
/// When the reference names an index, the image manifest for
/// `options.platform` is pulled and named, and the index blob is stored as
/// well. The stored entry records the index digest in
/// [`SOURCE_INDEX_ANNOTATION`], which keeps the index blob reachable.
/// Blobs the store already has are not downloaded again.
///
/// # Errors
///
/// [`TransferError::Registry`] when the registry fails or the content
/// does not match its digest, and [`TransferError::Store`] when the store
/// fails.
pub fn pull_image(
    client: &Client,
    store: &Store,
    reference: &Reference,
    options: &PullOptions,
    progress: &dyn TransferProgress,
) -> Result<Pulled, TransferError> {
    let _lease = store
        .lease()
        .map_err(TransferError::store("lease the store for the pull"))?;
    let ResolvedManifest { manifest, index } = client
        .get_image_manifest(reference, &options.platform)
        .map_err(TransferError::registry("fetch the manifest of", reference))?;
    let parsed: ImageManifest = serde_json::from_slice(&manifest.bytes).map_err(|error| {
        TransferError::InvalidManifest {
            what: "manifest",
            digest: manifest.digest.to_string(),
            reference: reference.to_string(),
            reason: error.to_string(),
        }
    })?;

    let mut blobs = vec![parsed.config().clone()];
    blobs.extend(parsed.layers().iter().cloned());
    progress.event(TransferEvent::Resolved {
        reference: reference.familiar(),
        blobs: blobs.len(),
    });
    run_bounded(&blobs, options.jobs, |descriptor| {
        pull_blob(client, store, reference, descriptor, progress)
    })?;
    unpack_layers(store, reference, &parsed, options.jobs)?;

    // The manifest (and index) go in last, so that a stored manifest
    // always has its blobs.
    let stored = put_exact(store, &manifest.bytes, &manifest.digest, reference)?;
    let mut descriptor = Descriptor::new(
        MediaType::from(manifest.media_type.as_str()),
        stored,
        manifest.digest.clone(),
    );
    let top = match &index {
        Some(index) => {
            // The entry points at the platform manifest and records the
            // index, so `prune` keeps the index blob and `NAME@DIGEST`
            // with the index digest finds the image.
            put_exact(store, &index.bytes, &index.digest, reference)?;
            let annotations = [(
                SOURCE_INDEX_ANNOTATION.to_string(),
                index.digest.to_string(),
            )];
            descriptor.set_annotations(Some(annotations.into_iter().collect()));
            index.digest.clone()
        }
        None => manifest.digest.clone(),
    };
    record_sources(
        store,
        reference,
        blobs
            .iter()
            .map(Descriptor::digest)
            .chain([&manifest.digest, &top]),
    );

    let (name, updated) = match reference.digest() {
        Some(digest) => {
            keep_digest_reference(store, &reference.with_digest(digest.clone()), &descriptor)?
        }
        None => set_tag_name(store, reference, &descriptor)?,
    };
    tracing::debug!(%reference, digest = %top, updated, "pulled image");
    Ok(Pulled {
        digest: top,
        manifest: descriptor,
        name,
        updated,
    })
}

/// Unpacks the layers of a pulled image into the store, as docker and
/// buildah do when they pull, so that the first RUN or `forge run` on the
/// image does not wait for the extraction. Layers already unpacked are
/// skipped.
fn unpack_layers(
    store: &Store,
    reference: &Reference,
    manifest: &ImageManifest,
    jobs: usize,
) -> Result<(), TransferError> {
    let config: serde_json::Value = store
        .get_json(manifest.config().digest())
        .map_err(TransferError::store("read the pulled image config"))?;
    let diff_ids: Vec<Digest> = config
        .pointer("/rootfs/diff_ids")
        .and_then(serde_json::Value::as_array)
        .map(|ids| {
            ids.iter()
                .filter_map(|id| id.as_str().and_then(|id| id.parse().ok()))
                .collect()
        })
        .unwrap_or_default();
    if diff_ids.len() != manifest.layers().len() {
        return Err(TransferError::InvalidManifest {
            what: "image config",
            digest: manifest.config().digest().to_string(),
            reference: reference.to_string(),
            reason: format!(
                "it lists {} diff IDs for {} layers",
                diff_ids.len(),
                manifest.layers().len()
            ),
        });
    }
    let layers: Vec<(&Descriptor, &Digest)> = manifest.layers().iter().zip(&diff_ids).collect();
    run_bounded(&layers, jobs, |(layer, diff_id)| {
        crate::sandbox::unpack_layer(store, layer, diff_id)
            .map(|_| ())
            .map_err(TransferError::store(format!(
                "unpack layer {}",
                layer.digest()
            )))
    })
}

/// Names the pulled image with the familiar form of `reference` (which
/// has a tag). Returns the name and whether it pointed at another manifest
/// (or nothing) before.
fn set_tag_name(
    store: &Store,
    reference: &Reference,
    descriptor: &Descriptor,
) -> Result<(String, bool), TransferError> {
    let name = reference.familiar();
    let previous = store.resolve(&name).ok();
    let updated = previous.as_ref().map(Descriptor::digest) != Some(descriptor.digest());
    store
        .set_name(&name, descriptor)
        .map_err(TransferError::store(format!("name the image `{name}`")))?;
    Ok((name, updated))
}

/// Keeps the image pulled by `by_digest` (`NAME@DIGEST`, without tag) as a
/// digest reference of its repository. Returns the familiar form of
/// `by_digest` and whether the reference is new.
fn keep_digest_reference(
    store: &Store,
    by_digest: &Reference,
    descriptor: &Descriptor,
) -> Result<(String, bool), TransferError> {
    let name = by_digest.familiar();
    let repository = name
        .rsplit_once('@')
        .map_or(name.as_str(), |(repository, _)| repository);
    let added =
        store
            .add_digest_reference(repository, descriptor)
            .map_err(TransferError::store(format!(
                "keep the digest reference `{name}`"
            )))?;
    Ok((name, added))
}

/// Stores `bytes` and checks that they hash to `digest`. Returns the size.
fn put_exact(
    store: &Store,
    bytes: &[u8],
    digest: &Digest,
    reference: &Reference,
) -> Result<u64, TransferError> {
    let info = store
        .put_blob(bytes)
        .map_err(TransferError::store(format!("store manifest {digest}")))?;
    if &info.digest != digest {
        return Err(TransferError::InvalidManifest {
            what: "manifest",
            digest: digest.to_string(),
            reference: reference.to_string(),
            reason: format!(
                "its bytes hash to {}; the store keeps sha256 content only",
                info.digest
            ),
        });
    }
    Ok(info.size)
}

/// Downloads one blob into the store unless it is there already.
fn pull_blob(
    client: &Client,
    store: &Store,
    reference: &Reference,
    descriptor: &Descriptor,
    progress: &dyn TransferProgress,
) -> Result<(), TransferError> {
    let digest = descriptor.digest();
    let size = descriptor.size();
    if store.has_blob(digest) {
        progress.event(TransferEvent::BlobFinished {
            digest: digest.clone(),
            size,
            outcome: BlobOutcome::AlreadyPresent,
        });
        return Ok(());
    }
    progress.event(TransferEvent::BlobStarted {
        digest: digest.clone(),
        size,
    });
    let writer = store
        .blob_writer()
        .map_err(TransferError::store(format!("start writing blob {digest}")))?;
    let mut sink = StoreSink {
        store,
        writer: Some(writer),
        counter: Counter::new(digest, size, progress),
    };
    client
        .pull_blob(reference, digest, Some(size), &mut sink)
        .map_err(TransferError::registry(
            &format!("download blob {digest} of"),
            reference,
        ))?;
    let Some(writer) = sink.writer.take() else {
        return Err(TransferError::Store {
            action: format!("store blob {digest}"),
            source: Box::new(StoreError::BlobNotFound {
                digest: digest.to_string(),
                path: store.root().to_path_buf(),
            }),
        });
    };
    writer
        .commit_descriptor(descriptor)
        .map_err(TransferError::store(format!("store blob {digest}")))?;
    progress.event(TransferEvent::BlobFinished {
        digest: digest.clone(),
        size,
        outcome: BlobOutcome::Downloaded,
    });
    Ok(())
}

/// Counts bytes of one blob and reports progress every
/// [`PROGRESS_STEP_BYTES`].
struct Counter<'a> {
    digest: &'a Digest,
    size: u64,
    done: u64,
    reported: u64,
    progress: &'a dyn TransferProgress,
}

impl<'a> Counter<'a> {
    fn new(digest: &'a Digest, size: u64, progress: &'a dyn TransferProgress) -> Self {
        Counter {
            digest,
            size,
            done: 0,
            reported: 0,
            progress,
        }
    }

    fn add(&mut self, bytes: usize) {
        self.done += bytes as u64;
        if self.done - self.reported >= PROGRESS_STEP_BYTES || self.done == self.size {
            self.reported = self.done;
            self.progress.event(TransferEvent::BlobProgress {
                digest: self.digest.clone(),
                done: self.done,
                size: self.size,
            });
        }
    }

    fn reset(&mut self) {
        self.done = 0;
        self.reported = 0;
    }
}

/// A [`BlobSink`] that writes into a store blob writer and starts over
/// with a fresh writer when the client discards a partial download.
struct StoreSink<'a> {
    store: &'a Store,
    writer: Option<BlobWriter>,
    counter: Counter<'a>,
}

impl Write for StoreSink<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let Some(writer) = self.writer.as_mut() else {
            return Err(io::Error::other("the blob writer could not be restarted"));
        };
        let written = writer.write(buf)?;
        self.counter.add(written);
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        match self.writer.as_mut() {
            Some(writer) => writer.flush(),
            None => Ok(()),
        }
    }
}

impl BlobSink for StoreSink<'_> {
    fn discard(&mut self) -> io::Result<()> {
        // Dropping the old writer removes its temporary file.
        self.writer = None;
        self.counter.reset();
        self.writer = Some(self.store.blob_writer().map_err(io::Error::other)?);
        Ok(())
    }
}

/// Records `reference`'s repository as a source of each blob. A failure
/// only costs a later mount, so it is logged and skipped.
fn record_sources<'a>(
    store: &Store,
    reference: &Reference,
    digests: impl IntoIterator<Item = &'a Digest>,
) {
    let source = BlobSource {
        registry: reference.registry().to_string(),
        repository: reference.repository().to_string(),
    };
    for digest in digests {
        if let Err(error) = store.record_blob_source(digest, &source) {
            tracing::warn!(%digest, %error, "cannot record the source of a blob");
        }
    }
}

/// Pushes the image or index that `source` (a stored manifest or index
/// descriptor) names to `destination`: the blobs first, several at once,
/// each checked with HEAD and mounted from another repository of the same
/// registry when the store records one that has it, then the manifest. An
/// index is pushed after each of its manifests, which are pushed by
/// digest and must all be in the store.
///
/// # Errors
///
/// [`TransferError::Store`] when a blob is missing from the store,
/// [`TransferError::InvalidManifest`] for an unreadable manifest, and
/// [`TransferError::Registry`] when the registry rejects a request.
pub fn push_image(
    client: &Client,
    store: &Store,
    source: &Descriptor,
    destination: &Reference,
    options: &PushOptions,
    progress: &dyn TransferProgress,
) -> Result<Pushed, TransferError> {
    let _lease = store
        .lease()
        .map_err(TransferError::store("lease the store for the push"))?;
    push_document(client, store, source, destination, options, progress)
}

fn push_document(
    client: &Client,
    store: &Store,
    source: &Descriptor,
    destination: &Reference,
    options: &PushOptions,
    progress: &dyn TransferProgress,
) -> Result<Pushed, TransferError> {
    let digest = source.digest();
    let bytes = store
        .read_blob(digest)
        .map_err(TransferError::store(format!("read manifest {digest}")))?;
    let value: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|error| TransferError::InvalidManifest {
            what: "manifest",
            digest: digest.to_string(),
            reference: destination.to_string(),
            reason: error.to_string(),
        })?;
    let media_type = media_type_of(source, &value);

    if value.get("manifests").is_some() {
        let index: ImageIndex =
            serde_json::from_value(value).map_err(|error| TransferError::InvalidManifest {
                what: "index",
                digest: digest.to_string(),
                reference: destination.to_string(),
                reason: error.to_string(),
            })?;
        for child in index.manifests() {
            let by_digest = destination.with_digest(child.digest().clone());
            push_document(client, store, child, &by_digest, options, progress)?;
        }
    } else {
        let manifest: ImageManifest =
            serde_json::from_value(value).map_err(|error| TransferError::InvalidManifest {
                what: "manifest",
                digest: digest.to_string(),
                reference: destination.to_string(),
                reason: error.to_string(),
            })?;
        let mut blobs = vec![manifest.config().clone()];
        blobs.extend(manifest.layers().iter().cloned());
        progress.event(TransferEvent::Resolved {
            reference: destination.familiar(),
            blobs: blobs.len(),
        });
        run_bounded(&blobs, options.jobs, |blob| {
            push_blob(client, store, destination, blob, progress)
        })?;
    }

    let pushed = client
        .push_manifest(destination, &bytes, &media_type)
        .map_err(TransferError::registry("push the manifest to", destination))?;
    record_sources(store, destination, [&pushed]);
    Ok(Pushed {
        digest: pushed,
        size: bytes.len() as u64,
    })
}

/// Returns the manifest media type to send: the descriptor's, else the
/// document's `mediaType`, else the OCI manifest type.
fn media_type_of(source: &Descriptor, value: &serde_json::Value) -> String {
    use forge_registry::client::{DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_INDEX};
    let from_descriptor = source.media_type().to_string();
    if [
        OCI_MANIFEST,
        OCI_INDEX,
        DOCKER_MANIFEST,
        DOCKER_MANIFEST_LIST,
    ]
    .contains(&from_descriptor.as_str())
    {
        return from_descriptor;
    }
    if let Some(text) = value.get("mediaType").and_then(serde_json::Value::as_str) {
        return text.to_string();
    }
    if value.get("manifests").is_some() {
        return OCI_INDEX.to_string();
    }
    OCI_MANIFEST.to_string()
}

/// Sends one blob: mounted from a known repository of the same registry
/// when possible, otherwise uploaded unless the repository has it.
fn push_blob(
    client: &Client,
    store: &Store,
    destination: &Reference,
    descriptor: &Descriptor,
    progress: &dyn TransferProgress,
) -> Result<(), TransferError> {
    let digest = descriptor.digest();
    let size = store
        .blob_size(digest)
        .map_err(TransferError::store(format!("find blob {digest}")))?;
    progress.event(TransferEvent::BlobStarted {
        digest: digest.clone(),
        size,
    });

    let outcome = match mount_from_known(client, store, destination, digest)? {
        Some(outcome) => outcome,
        None => {
            let reader = store
                .open_blob(digest)
                .map_err(TransferError::store(format!("open blob {digest}")))?;
            let mut counted = CountingReader {
                inner: reader,
                counter: Counter::new(digest, size, progress),
            };
            let pushed = client
                .push_blob(destination, digest, size, &mut counted)
                .map_err(TransferError::registry(
                    &format!("upload blob {digest} to"),
                    destination,
                ))?;
            match pushed {
                BlobPush::AlreadyExists => BlobOutcome::AlreadyExists,
                _ => BlobOutcome::Uploaded,
            }
        }
    };
    record_sources(store, destination, [digest]);
    progress.event(TransferEvent::BlobFinished {
        digest: digest.clone(),
        size,
        outcome,
    });
    Ok(())
}

/// Tries the repositories of `destination`'s registry that the store
/// records for `digest`. Returns `None` when none is known or none
/// mounted the blob; `AlreadyExists` when the destination has it.
fn mount_from_known(
    client: &Client,
    store: &Store,
    destination: &Reference,
    digest: &Digest,
) -> Result<Option<BlobOutcome>, TransferError> {
    let known: Vec<BlobSource> = store
        .blob_sources(digest)
        .unwrap_or_default()
        .into_iter()
        .filter(|source| {
            source.registry == destination.registry()
                && source.repository != destination.repository()
        })
        .collect();
    if known.is_empty() {
        return Ok(None);
    }
    if client
        .blob_exists(destination, digest)
        .map_err(TransferError::registry(
            &format!("check blob {digest} in"),
            destination,
        ))?
        .is_some()
    {
        return Ok(Some(BlobOutcome::AlreadyExists));
    }
    for source in known.iter().take(3) {
        let Ok(from) = Reference::from_parts(&source.registry, &source.repository, None, None)
        else {
            continue;
        };
        match client.mount_blob(destination, &from, digest) {
            Ok(true) => {
                return Ok(Some(BlobOutcome::Mounted {
                    from: source.repository.clone(),
                }));
            }
            Ok(false) => {}
            // The source repository may be gone or closed to this user;
            // an upload still works.
            Err(error) => {
                tracing::debug!(%digest, from = %from, %error, "mount failed, uploading instead");
            }
        }
    }
    Ok(None)
}

/// A reader that reports how much of a blob has been read.
struct CountingReader<'a, R> {
    inner: R,
    counter: Counter<'a>,
}

impl<R: Read> Read for CountingReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let read = self.inner.read(buf)?;
        self.counter.add(read);
        Ok(read)
    }
}

/// Runs `work` on every item with at most `jobs` threads. Stops handing
/// out items after the first failure and returns the first error in item
/// order.
fn run_bounded<T: Sync>(
    items: &[T],
    jobs: usize,
    work: impl Fn(&T) -> Result<(), TransferError> + Sync,
) -> Result<(), TransferError> {
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let errors: Mutex<Vec<(usize, TransferError)>> = Mutex::new(Vec::new());
    let threads = jobs.clamp(1, items.len().max(1));
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                while !failed.load(Ordering::SeqCst) {
                    let index = next.fetch_add(1, Ordering::SeqCst);
                    let Some(item) = items.get(index) else {
                        break;
                    };
                    if let Err(error) = work(item) {
                        failed.store(true, Ordering::SeqCst);
                        errors
                            .lock()
                            .unwrap_or_else(|poisoned| poisoned.into_inner())
                            .push((index, error));
                    }
                }
            });
        }
    });
    let mut errors = errors
        .into_inner()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    errors.sort_by_key(|(index, _)| *index);
    match errors.into_iter().next() {
        Some((_, error)) => Err(error),
        None => Ok(()),
    }
}

/// The source of `FROM` images that are not in the store.
#[derive(Clone)]
pub struct BasePuller {
    /// The registry client.
    pub client: Arc<Client>,
    /// Pull options (platform, parallel downloads).
    pub options: PullOptions,
    /// `--pull`: resolve every base in the registry even when the store
    /// has it.
    pub always: bool,
}

impl std::fmt::Debug for BasePuller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BasePuller")
            .field("options", &self.options)
            .field("always", &self.always)
            .finish_non_exhaustive()
    }
}

/// Pulls the base image `name` of a `FROM` step when the store lacks it,
/// or always with [`BasePuller::always`], reporting each blob as output
/// of `step`. A name that is not a valid reference is left for the
/// store lookup to reject.
///
/// # Errors
///
/// The errors of [`pull_image`].
pub fn ensure_base(
    store: &Store,
    puller: &BasePuller,
    name: &str,
    progress: &dyn Progress,
    step: &StepId,
) -> Result<(), TransferError> {
    let Ok(reference) = name.parse::<Reference>() else {
        return Ok(());
    };
    let stored = store.resolve(&reference.familiar()).is_ok() || store.resolve(name).is_ok();
    if !puller.always && stored {
        return Ok(());
    }

    let say = |line: String| {
        progress.event(ProgressEvent::Output {
            step: step.clone(),
            stream: Stream::Stderr,
            line,
        });
    };
    say(format!("pulling {}", reference.familiar()));
    let report = |event: TransferEvent| {
        if let TransferEvent::BlobFinished {
            digest,
            size,
            outcome,
        } = event
        {
            let what = match outcome {
                BlobOutcome::Downloaded => "downloaded",
                _ => "already present",
            };
            say(format!("{}: {what} ({size} bytes)", short_digest(&digest)));
        }
    };
    let pulled = pull_image(&puller.client, store, &reference, &puller.options, &report)?;
    say(format!("digest: {}", pulled.digest));
    Ok(())
}

/// Returns the first 12 hex digits of a digest, as docker shows layer ids.
pub fn short_digest(digest: &Digest) -> &str {
    let hex = digest.digest();
    hex.get(..12).unwrap_or(hex)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_bounded_visits_every_item() {
        let seen = Mutex::new(Vec::new());
        let items: Vec<usize> = (0..10).collect();
        let result = run_bounded(&items, 3, |item| {
            seen.lock().unwrap().push(*item);
            Ok(())
        });
        assert!(result.is_ok());
        let mut seen = seen.into_inner().unwrap();
        seen.sort_unstable();
        assert_eq!(seen, items);
    }

    #[test]
    fn run_bounded_returns_first_error() {
        let items: Vec<usize> = (0..4).collect();
        let result = run_bounded(&items, 1, |item| {
            if *item >= 2 {
                return Err(TransferError::InvalidManifest {
                    what: "manifest",
                    digest: String::new(),
                    reference: format!("item{item}"),
                    reason: String::new(),
                });
            }
            Ok(())
        });
        let message = result.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(message.contains("item2"), "{message}");
    }

    #[test]
    fn run_bounded_with_no_items() {
        let items: Vec<usize> = Vec::new();
        assert!(run_bounded(&items, 4, |_| Ok(())).is_ok());
    }

    #[test]
    fn media_type_prefers_descriptor() {
        let digest: Digest = format!("sha256:{}", "a".repeat(64)).parse().unwrap();
        let descriptor = Descriptor::new(MediaType::ImageManifest, 1, digest.clone());
        let value = serde_json::json!({"mediaType": "other"});
        assert_eq!(media_type_of(&descriptor, &value), OCI_MANIFEST);
        let unknown = Descriptor::new(MediaType::Other("x".into()), 1, digest);
        let docker = serde_json::json!({
            "mediaType": forge_registry::client::DOCKER_MANIFEST
        });
        assert_eq!(
            media_type_of(&unknown, &docker),
            forge_registry::client::DOCKER_MANIFEST
        );
        assert_eq!(
            media_type_of(&unknown, &serde_json::json!({"manifests": []})),
            forge_registry::client::OCI_INDEX
        );
    }

    #[test]
    fn short_digest_takes_twelve() {
        let digest: Digest = format!("sha256:{}", "0123456789abcdef".repeat(4))
            .parse()
            .unwrap();
        assert_eq!(short_digest(&digest), "0123456789ab");
    }
}
