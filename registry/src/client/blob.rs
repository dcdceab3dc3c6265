//! Blob transfer: existence checks, downloads with verification and
//! resumption, cross-repository mounts and uploads.

use std::fs::File;
use std::io::{self, Read, Seek, Write};

use oci_spec::image::Digest;
use reqwest::blocking::Response;
use reqwest::header;
use reqwest::{Method, StatusCode, Url};
use sha2::Digest as _;

use super::{Client, ClientError, pull_scope, push_scope};
use crate::reference::Reference;

/// A destination for a downloaded blob.
///
/// The client writes the blob's bytes in order. When a download fails or
/// the bytes do not match the digest or size, the client calls
/// [`BlobSink::discard`] before it returns the error. The sink must then
/// drop everything written so far.
pub trait BlobSink: Write {
    /// Drops all bytes written so far.
    ///
    /// # Errors
    ///
    /// Returns the I/O error of dropping them; the client logs it and
    /// returns the original error.
    fn discard(&mut self) -> io::Result<()>;
}

impl BlobSink for Vec<u8> {
    fn discard(&mut self) -> io::Result<()> {
        self.clear();
        Ok(())
    }
}

impl BlobSink for io::Sink {
    fn discard(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl BlobSink for File {
    /// Truncates the file to zero length and rewinds it.
    fn discard(&mut self) -> io::Result<()> {
        self.set_len(0)?;
        self.rewind()?;
        Ok(())
    }
}

/// The outcome of [`Client::push_blob`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobPush {
    /// The registry already had the blob; no data was sent.
    AlreadyExists,
    /// The blob was uploaded.
    Uploaded,
}

/// A running digest over sha256 or sha512.
enum Hasher {
    Sha256(sha2::Sha256),
    Sha512(sha2::Sha512),
}

impl Hasher {
    fn for_digest(digest: &Digest) -> Result<Hasher, ClientError> {
        match digest.algorithm().as_ref() {
            "sha256" => Ok(Hasher::Sha256(sha2::Sha256::new())),
            "sha512" => Ok(Hasher::Sha512(sha2::Sha512::new())),
            _ => Err(ClientError::UnsupportedDigest {
                digest: digest.to_string(),
            }),
        }
    }

    fn update(&mut self, bytes: &[u8]) {
        match self {
            Hasher::Sha256(h) => h.update(bytes),
            Hasher::Sha512(h) => h.update(bytes),
        }
    }

    fn finish(self) -> String {
        match self {
            Hasher::Sha256(h) => format!("sha256:{}", hex::encode(h.finalize())),
            Hasher::Sha512(h) => format!("sha512:{}", hex::encode(h.finalize())),
        }
    }
}

/// Parses `Content-Range: bytes START-END/TOTAL` into START.
fn content_range_start(response: &Response) -> Option<u64> {
    let value = response
        .headers()
        .get(header::CONTENT_RANGE)?
        .to_str()
        .ok()?;
    let range = value.trim().strip_prefix("bytes ")?;
    let (start, _) = range.split_once('-')?;
    start.trim().parse().ok()
}

fn header_u64(response: &Response, name: header::HeaderName) -> Option<u64> {
    response
        .headers()
        .get(name)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The reason one attempt at reading a blob body stopped.
enum BodyStop {
    /// The connection broke; the download may be resumed.
    Broken(io::Error),
    /// A final error.
    Fatal(ClientError),
}

impl Client {
    /// Returns the blob's size when `reference`'s repository has the blob
    /// `digest`, `None` when it does not (HEAD request).
    ///
    /// # Errors
    ///
    /// Returns an error when the registry is unreachable or access is
    /// denied.
    pub fn blob_exists(
        &self,
        reference: &Reference,
        digest: &Digest,
    ) -> Result<Option<u64>, ClientError> {
        self.blob_exists_with(reference, digest, &pull_scope(reference.repository()))
    }

    fn blob_exists_with(
        &self,
        reference: &Reference,
        digest: &Digest,
        scopes: &[String],
    ) -> Result<Option<u64>, ClientError> {
        let path = format!("/v2/{}/blobs/{digest}", reference.repository());
        let response = self.send(reference, scopes, Method::HEAD, &path, &|r| r)?;
        match response.status() {
            StatusCode::OK => Ok(Some(
                header_u64(&response, header::CONTENT_LENGTH).unwrap_or(0),
            )),
            StatusCode::NOT_FOUND => Ok(None),
            _ => Err(self.request_error(&Method::HEAD, reference.registry(), scopes, response)),
        }
    }

    /// Downloads blob `digest` of `reference`'s repository into `sink`,
    /// checking the size (`expected_size`, else `Content-Length`) and the
    /// digest while streaming. A connection that breaks mid-body is resumed
    /// with a `Range` request up to [`super::ClientConfig::max_retries`]
    /// times. On any error after the first byte was written the client calls
    /// [`BlobSink::discard`]. Returns the number of bytes written.
    ///
    /// # Errors
    ///
    /// Returns [`ClientError::DigestMismatch`] or
    /// [`ClientError::SizeMismatch`] for bad content, [`ClientError::Sink`]
    /// when the sink fails, and the registry's error otherwise.
    pub fn pull_blob(
        &self,
        reference: &Reference,
        digest: &Digest,
        expected_size: Option<u64>,
        sink: &mut dyn BlobSink,
    ) -> Result<u64, ClientError> {
        let result = self.pull_blob_inner(reference, digest, expected_size, sink);
        if let Err(error) = &result {
            if let Err(discard_error) = sink.discard() {
                tracing::warn!(%digest, %discard_error, %error, "failed to discard a partial blob");
            }
            tracing::debug!(%digest, %error, "blob download failed");
        }
        result
    }

    fn pull_blob_inner(
        &self,
        reference: &Reference,
        digest: &Digest,
        expected_size: Option<u64>,
        sink: &mut dyn BlobSink,
    ) -> Result<u64, ClientError> {
        let scopes = pull_scope(reference.repository());
        let path = format!("/v2/{}/blobs/{digest}", reference.repository());
        let mut hasher = Hasher::for_digest(digest)?;
        let mut written: u64 = 0;
        let mut expected = expected_size;
        let mut attempts: u32 = 0;
        let mut url_text;

        loop {
            attempts += 1;
            let offset = written;
            let response = self.send(reference, &scopes, Method::GET, &path, &|r| {
                if offset > 0 {
                    r.header(header::RANGE, format!("bytes={offset}-"))
                } else {
                    r
                }
            })?;
            url_text = response.url().to_string();

            // A registry that ignores Range sends the whole blob again; the
            // bytes already written are skipped.
            let mut skip = 0;
            match response.status() {
                StatusCode::OK => {
                    skip = offset;
                    if expected.is_none() {
                        expected = header_u64(&response, header::CONTENT_LENGTH);
                    }
                }
                StatusCode::PARTIAL_CONTENT if offset > 0 => {
                    if content_range_start(&response) != Some(offset) {
                        return Err(ClientError::InvalidResponse {
                            url: url_text,
                            reason: format!("the partial response does not start at byte {offset}"),
                        });
                    }
                }
                _ => {
                    return Err(self.request_error(
                        &Method::GET,
                        reference.registry(),
                        &scopes,
                        response,
                    ));
                }
            }

            let target = BodyTarget {
                url: &url_text,
                digest,
                expected,
            };
            match copy_body(response, skip, &target, &mut hasher, &mut written, sink) {
                Ok(()) => {}
                Err(BodyStop::Fatal(error)) => return Err(error),
                Err(BodyStop::Broken(source)) => {
                    if attempts > self.config.max_retries {
                        return Err(ClientError::BodyRead {
                            url: url_text,
                            attempts,
                            source,
                        });
                    }
                    let delay = self.backoff(attempts, None);
                    tracing::warn!(%digest, url = %url_text, written, error = %source, ?delay, "blob download broke, resuming");
                    std::thread::sleep(delay);
                    continue;
                }
            }

            // The body ended without an error, but short of the expected
            // size: the connection closed early, so resume.
            if let Some(size) = expected
                && written < size
            {
                if attempts > self.config.max_retries {
                    return Err(ClientError::SizeMismatch {
                        url: url_text,
                        expected: size,
                        actual: written,
                    });
                }
                tracing::warn!(%digest, url = %url_text, written, size, "blob body ended early, resuming");
                std::thread::sleep(self.backoff(attempts, None));
                continue;
            }
            break;
        }

        let actual = hasher.finish();
        if actual != digest.as_ref() {
            return Err(ClientError::DigestMismatch {
                url: url_text,
                expected: digest.to_string(),
                actual,
            });
        }
        sink.flush().map_err(|source| ClientError::Sink {
            digest: digest.to_string(),
            url: url_text.clone(),
            source,
        })?;
        Ok(written)
    }

    /// Mounts blob `digest` from `from`'s repository into `target`'s
    /// repository on the same registry. Returns `false` when the registry
    /// did not mount it, because it lacks the blob or the repositories are
    /// on different registries. The caller then uploads the blob.
    ///
    /// # Errors
    ///
    /// Returns an error when the registry is unreachable or denies access.
    pub fn mount_blob(
        &self,
        target: &Reference,
        from: &Reference,
        digest: &Digest,
    ) -> Result<bool, ClientError> {
        if target.registry() != from.registry() {
            tracing::debug!(target = %target, from = %from, "no mount across registries");
            return Ok(false);
        }
        let mut scopes = push_scope(target.repository());
        if from.repository() != target.repository() {
            scopes.extend(pull_scope(from.repository()));
        }
        let path = format!(
            "/v2/{}/blobs/uploads/?mount={digest}&from={}",
            target.repository(),
            from.repository()
        );
        let response = self.send(target, &scopes, Method::POST, &path, &|r| {
            r.header(header::CONTENT_LENGTH, "0")
        })?;
        match response.status() {
            StatusCode::CREATED => {
                tracing::debug!(%digest, from = %from, target = %target, "mounted blob");
                Ok(true)
            }
            StatusCode::ACCEPTED => {
                // The registry opened an upload instead; close it.
                let location = self.upload_location(&response)?;
                self.cancel_upload(target, &scopes, &location);
                Ok(false)
            }
            _ => Err(self.request_error(&Method::POST, target.registry(), &scopes, response)),
        }
    }

    /// Uploads blob `digest` of `size` bytes read from `data` to
    /// `reference`'s repository, unless the repository already has it.
    /// Blobs up to [`super::ClientConfig::monolithic_max_bytes`] go in one
    /// PUT; larger ones in PATCH chunks of
    /// [`super::ClientConfig::chunk_bytes`]. The data is hashed while it is
    /// read, and a size or digest mismatch cancels the upload.
    ///
    /// # Errors
    ///
    /// Returns [`ClientError::DigestMismatch`] or
    /// [`ClientError::SizeMismatch`] when `data` does not match,
    /// [`ClientError::Source`] when reading it fails, and the registry's
    /// error otherwise.
    pub fn push_blob(
        &self,
        reference: &Reference,
        digest: &Digest,
        size: u64,
        data: &mut dyn Read,
    ) -> Result<BlobPush, ClientError> {
        let scopes = push_scope(reference.repository());
        if self.blob_exists_with(reference, digest, &scopes)?.is_some() {
            tracing::debug!(%digest, repository = %reference.repository(), "blob already present");
            return Ok(BlobPush::AlreadyExists);
        }

        let path = format!("/v2/{}/blobs/uploads/", reference.repository());
        let response = self.send(reference, &scopes, Method::POST, &path, &|r| {
            r.header(header::CONTENT_LENGTH, "0")
        })?;
        if response.status() != StatusCode::ACCEPTED {
            return Err(self.request_error(&Method::POST, reference.registry(), &scopes, response));
        }
        let location = self.upload_location(&response)?;

        let result = if size <= self.config.monolithic_max_bytes {
            self.upload_monolithic(reference, &scopes, digest, size, data, location.clone())
        } else {
            self.upload_chunked(reference, &scopes, digest, size, data, location.clone())
        };
        if result.is_err() {
            self.cancel_upload(reference, &scopes, &location);
        }
        result.map(|()| BlobPush::Uploaded)
    }

    fn upload_monolithic(
        &self,
        reference: &Reference,
        scopes: &[String],
        digest: &Digest,
        size: u64,
        data: &mut dyn Read,
        location: Url,
    ) -> Result<(), ClientError> {
        let mut bytes = Vec::new();
        data.take(size.saturating_add(1))
            .read_to_end(&mut bytes)
            .map_err(|source| ClientError::Source {
                digest: digest.to_string(),
                repository: reference.repository().to_owned(),
                source,
            })?;
        let mut hasher = Hasher::for_digest(digest)?;
        hasher.update(&bytes);
        self.verify_source(reference, digest, size, bytes.len() as u64, hasher)?;

        let url = with_digest_query(location, digest);
        let response = self.send(reference, scopes, Method::PUT, url.as_str(), &|r| {
            r.header(header::CONTENT_TYPE, "application/octet-stream")
                .body(bytes.clone())
        })?;
        self.finish_upload(reference, scopes, digest, response)
    }

    fn upload_chunked(
        &self,
        reference: &Reference,
        scopes: &[String],
        digest: &Digest,
        size: u64,
        data: &mut dyn Read,
        mut location: Url,
    ) -> Result<(), ClientError> {
        let chunk_bytes = self.config.chunk_bytes.max(1);
        let mut hasher = Hasher::for_digest(digest)?;
        let mut sent: u64 = 0;
        let mut chunk = vec![0u8; chunk_bytes];

        loop {
            let filled = read_full(data, &mut chunk).map_err(|source| ClientError::Source {
                digest: digest.to_string(),
                repository: reference.repository().to_owned(),
                source,
            })?;
            if filled == 0 {
                break;
            }
            let piece = chunk.get(..filled).unwrap_or_default().to_vec();
            hasher.update(&piece);
            if sent + filled as u64 > size {
                return Err(ClientError::SizeMismatch {
                    url: format!(
                        "{}/{}@{digest}",
                        reference.registry(),
                        reference.repository()
                    ),
                    expected: size,
                    actual: sent + filled as u64,
                });
            }
            // NOTE: a retried PATCH resends the whole chunk. A registry that
            // stored part of the failed attempt rejects it with HTTP 416,
            // because the client does not query the upload's offset first.
            let range = format!("{sent}-{}", sent + filled as u64 - 1);
            let response =
                self.send(reference, scopes, Method::PATCH, location.as_str(), &|r| {
                    r.header(header::CONTENT_TYPE, "application/octet-stream")
                        .header(header::CONTENT_RANGE, range.clone())
                        .body(piece.clone())
                })?;
            if response.status() != StatusCode::ACCEPTED {
                return Err(self.request_error(
                    &Method::PATCH,
                    reference.registry(),
                    scopes,
                    response,
                ));
            }
            location = self.upload_location(&response)?;
            sent += filled as u64;
        }
        self.verify_source(reference, digest, size, sent, hasher)?;

        let url = with_digest_query(location, digest);
        let response = self.send(reference, scopes, Method::PUT, url.as_str(), &|r| {
            r.header(header::CONTENT_LENGTH, "0")
        })?;
        self.finish_upload(reference, scopes, digest, response)
    }

    fn verify_source(
        &self,
        reference: &Reference,
        digest: &Digest,
        size: u64,
        actual_size: u64,
        hasher: Hasher,
    ) -> Result<(), ClientError> {
        let blob = format!(
            "{}/{}@{digest}",
            reference.registry(),
            reference.repository()
        );
        if actual_size != size {
            return Err(ClientError::SizeMismatch {
                url: blob,
                expected: size,
                actual: actual_size,
            });
        }
        let actual = hasher.finish();
        if actual != digest.as_ref() {
            return Err(ClientError::DigestMismatch {
                url: blob,
                expected: digest.to_string(),
                actual,
            });
        }
        Ok(())
    }

    fn finish_upload(
        &self,
        reference: &Reference,
        scopes: &[String],
        digest: &Digest,
        response: Response,
    ) -> Result<(), ClientError> {
        if response.status() != StatusCode::CREATED {
            return Err(self.request_error(&Method::PUT, reference.registry(), scopes, response));
        }
        let stored = response
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .map(str::trim);
        if let Some(stored) = stored
            && stored != digest.as_ref()
        {
            return Err(ClientError::DigestMismatch {
                url: response.url().to_string(),
                expected: digest.to_string(),
                actual: stored.to_owned(),
            });
        }
        tracing::debug!(%digest, repository = %reference.repository(), "uploaded blob");
        Ok(())
    }

    /// Resolves an upload's `Location` header against the registry URL.
    fn upload_location(&self, response: &Response) -> Result<Url, ClientError> {
        let url = response.url().clone();
        let location = response
            .headers()
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| ClientError::InvalidResponse {
                url: url.to_string(),
                reason: "the upload response has no Location header".to_owned(),
            })?;
        url.join(location)
            .map_err(|e| ClientError::InvalidResponse {
                url: url.to_string(),
                reason: format!("invalid Location header `{location}`: {e}"),
            })
    }

    /// Deletes an unfinished upload; failures are only logged because the
    /// registry expires abandoned uploads by itself.
    fn cancel_upload(&self, reference: &Reference, scopes: &[String], location: &Url) {
        match self.send(reference, scopes, Method::DELETE, location.as_str(), &|r| r) {
            Ok(response) if response.status().is_success() => {}
            Ok(response) => {
                tracing::debug!(url = %location, status = response.status().as_u16(), "failed to cancel upload");
            }
            Err(error) => tracing::debug!(url = %location, %error, "failed to cancel upload"),
        }
    }
}

/// Fills `buffer` from `data` unless the data ends first; returns how many
/// bytes were read.
fn read_full(data: &mut dyn Read, buffer: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        let Some(rest) = buffer.get_mut(filled..) else {
            break;
        };
        match data.read(rest) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

fn with_digest_query(mut url: Url, digest: &Digest) -> Url {
    url.query_pairs_mut().append_pair("digest", digest.as_ref());
    url
}

/// The expectations a blob body is checked against.
struct BodyTarget<'a> {
    url: &'a str,
    digest: &'a Digest,
    expected: Option<u64>,
}

/// Copies a blob body into `sink`, skipping the first `skip` bytes and
/// stopping with an error past the expected size.
fn copy_body(
    mut response: Response,
    mut skip: u64,
    target: &BodyTarget<'_>,
    hasher: &mut Hasher,
    written: &mut u64,
    sink: &mut dyn BlobSink,
) -> Result<(), BodyStop> {
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let read = match response.read(&mut buffer) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(BodyStop::Broken(e)),
        };
        let mut bytes = buffer.get(..read).unwrap_or_default();
        if skip > 0 {
            let dropped = (skip as usize).min(bytes.len());
            bytes = bytes.get(dropped..).unwrap_or_default();
            skip -= dropped as u64;
        }
        if bytes.is_empty() {
            continue;
        }
        let total = *written + bytes.len() as u64;
        if let Some(size) = target.expected
            && total > size
        {
            return Err(BodyStop::Fatal(ClientError::SizeMismatch {
                url: target.url.to_owned(),
                expected: size,
                actual: total,
            }));
        }
        hasher.update(bytes);
        if let Err(source) = sink.write_all(bytes) {
            return Err(BodyStop::Fatal(ClientError::Sink {
                digest: target.digest.to_string(),
                url: target.url.to_owned(),
                source,
            }));
        }
        *written = total;
    }
}
